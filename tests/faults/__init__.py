"""Fault injection against real servers, each ending with a consistent store holding the
totals of an undisturbed run of the same commands on the same data:

- ``test_proxy``: answers cut short, late and 5xx between collect and Prometheus;
- ``test_prometheus_restart``: Prometheus SIGKILLed and started again mid collect;
- ``test_disk_full``: the store's disk fills up mid collect (a small tmpfs);
- ``test_two_collects``: two collects over the same hours at once;
- ``test_kill_finalize``: SIGKILL in ``invoice --finalize`` between commit and files;
- ``test_kill_stripe``: SIGKILL in ``stripe sync`` between two calls to Stripe.
"""
