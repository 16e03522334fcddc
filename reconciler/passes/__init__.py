"""What a pass over one account uses between its requests and the store: the batcher commits
its observations a batch at a time (batcher.py), the hint gate makes it give way while a
notification is checked (hint_gate.py), notifications' observations that wait for the writer
together share one transaction (hint_group.py), and a pass's report counts what it did
(report.py)."""
