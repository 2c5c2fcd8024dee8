//! Docker's swarm types (`ServiceSpec`, `TaskSpec`, `Service`, `Task`, ...) and their mapping to Shoal's.
