"""Bodies of the commands whose work is more than a call into one module (cli.py parses)."""
