//! Readouts trained on the host: ridge, softmax regression, MLP.
