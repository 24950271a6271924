"""Training objectives: Hungarian matcher, set criterion (cls/BCE/dice), contrastive loss."""
