"""The live side: sessions in memory, their ring buffers, fan-out to watchers."""
