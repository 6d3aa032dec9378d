"""What a user runs: assemble an ensemble from published experts, generate images, and the demo."""
