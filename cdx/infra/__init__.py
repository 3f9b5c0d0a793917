"""Local launchers for the real parts: an Apache Kafka broker (KRaft) and PostgreSQL."""
