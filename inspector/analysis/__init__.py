"""Analysis of captures: logit lens, value norms, rollout, head statistics, comparisons."""
