enum _PlaceholderDevIDAgent {}
