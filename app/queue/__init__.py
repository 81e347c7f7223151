"""The waiting room: a fair Redis admission queue per sale with signed admission passes."""
