"""The bodies of the commands, one module per group; cli.py parses and maps errors to exit codes.

A command returns an exit code from exits.py or raises one of its errors; none calls sys.exit().
"""
