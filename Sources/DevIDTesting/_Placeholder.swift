enum _PlaceholderDevIDTesting {}
