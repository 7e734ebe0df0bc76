"""Decentralized multi-target recommendation: organizations, messages, transports, MTAL rounds, privacy."""
