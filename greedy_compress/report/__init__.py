"""What happened: the compression report, analysis records of a dictionary, and plots."""
