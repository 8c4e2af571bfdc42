"""RabbitMQ access: the link, the publishers, and passive inspection."""
