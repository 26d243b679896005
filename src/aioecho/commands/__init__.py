"""The programs behind the `aioecho` subcommands, one module each.

Each module has one entry point that takes its config (from config.py) and runs the program to
its end, raising AioechoError for what the user can act on. Nothing here parses arguments or
picks exit codes: cli.py does, and only cli.py. A new subcommand gets a module here.
"""
