"""The sandbox world: scene specs, renderer, sampler, captions and datasets."""
