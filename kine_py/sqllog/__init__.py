"""The log on a SQL database through a DB-API driver: one implementation, one Dialect per database."""
