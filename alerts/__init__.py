"""Alert policy (intent categories users edit) and, later, alert channels."""
