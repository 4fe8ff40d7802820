"""causalvision: causal modelling of images in JAX."""
