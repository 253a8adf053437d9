"""Everything that is not a tensor op: config, tokenizers, the weight-name table, checkpoint I/O, outputs."""
