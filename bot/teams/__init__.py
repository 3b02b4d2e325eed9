"""Teams' edge: the front door (Bot Framework auth, CloudAdapter, the ActivityHandler), replies,
proactive sends, stored conversation references, the outbox notifier and the app package."""
