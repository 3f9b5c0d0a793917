"""Kafka helpers shared by every component: client configuration, topic creation,
reading a topic to its end, consumer lag, transactional producing."""
