"""The gRPC layer: etcd's services as adapters over the MVCC store. No storage logic here."""
