"""What travels between services: messages, AMQP headers, topology names, ordering keys."""
