"""What a schedule means, independent of any solver: matching, precedence
constraints, memory accesses and the proof obligations of each property."""
