from kine_py.cli import main

main()
