"""The ``agentwatch`` command line."""

from __future__ import annotations

import typer

from agentwatch.cli import (
    alerts_cmd,
    eval_cmd,
    feedback_cmd,
    init_cmd,
    models_cmd,
    replay_cmd,
    schema_cmd,
    simulate_cmd,
    up_cmd,
    worker_cmd,
)

app = typer.Typer(
    name="agentwatch",
    help="Real-time behavioural anomaly detection for AI agents.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command("up")(up_cmd.up)
app.command("init")(init_cmd.init)
app.command("worker")(worker_cmd.worker)
app.command("schema")(schema_cmd.schema)
app.command("replay")(replay_cmd.replay)
app.command("simulate")(simulate_cmd.simulate)
app.command("eval")(eval_cmd.eval_)
app.add_typer(alerts_cmd.app, name="alerts")
app.add_typer(feedback_cmd.app, name="feedback")
app.add_typer(models_cmd.app, name="models")
