"""The bodies of the commands, one module per group; cli.py parses and maps errors to exit codes.

A command returns an exit code from exits.py or raises one of its errors; none calls sys.exit().
"""

# The commands that ask no provider, sign nothing and send to no sink: cli.py loads the config
# for them with `secrets_optional` (config/loader.py), so that a user with the config and none of
# the credentials (monitoring, an operator without root) can run them. `track` needs the [api]
# token only to settle an uncertain submit through the running daemon; without the token that
# step exits 78 naming it (the orders are tracked by then; the same command again settles it).
WITHOUT_SECRETS = frozenset({"status", "orders", "events", "track", "untrack"})

# The commands that set their own stop signals' handlers (daemon.py): cli.py does not have
# SIGTERM cancel them as it does the others (eventloop.ended_by_sigterm). A SIGTERM that came
# before the daemon's handlers was taken by both (uvloop hands it on to a handler set later):
# the daemon logged `daemon.signal`, then, half started, ended by the signal. Before its
# handlers, SIGTERM's default action ends it (README, `run`).
OWN_SIGNALS = frozenset({"run"})
