"""What a run leaves behind: metrics, result files, the cross-run report, sweep callbacks."""
