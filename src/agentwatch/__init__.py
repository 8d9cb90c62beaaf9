"""agentwatch: real-time behavioural anomaly detection for AI agents."""

__version__ = "0.1.0"
