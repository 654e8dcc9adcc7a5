"""The paper's analyses: complexity (parameters, MACs), ERF, attentive maps, SGN, LAM."""
