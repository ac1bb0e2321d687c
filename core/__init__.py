"""What every layer shares: where data lives, strict JSON, atomic files."""
