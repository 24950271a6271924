"""What ``make demo`` leaves to look at."""
