"""The ``lianchuang`` command line (联创命令行): tokens, demo data, database
setup and the auditor's commands. It may know the services (their configs and
demo loaders); the platform package ``shared`` knows none of them."""
