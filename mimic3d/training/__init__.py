"""Training engine: discriminator augmentation and the pieces the training loop is built from."""
