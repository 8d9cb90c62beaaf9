"""Grafana dashboards for agentwatch, defined as Python data.

The dashboards live in :mod:`agentwatch.grafana.dashboards` (``render_dashboards``,
``write_dashboards``, ``expand_macros``). The JSON files in ``deploy/grafana/dashboards``
are generated from it::

    python -m agentwatch.grafana.dashboards deploy/grafana/dashboards

and a test keeps them equal to ``render_dashboards()`` and runs every query against the
real schema.
"""
