"""Commands of this part are added by its issue."""
