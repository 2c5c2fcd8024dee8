//! Docker's swarm types (`ServiceSpec`, `TaskSpec`, `Service`, `Task`, ...) and
//! their mapping to Shoal's and back: [`types`] declares every field of the v1.41
//! swagger (an unknown one is a 400 naming it), [`to_shoal`] refuses by name what
//! Shoal cannot honour, [`to_docker`] renders stored objects.

pub(crate) mod to_docker;
pub(crate) mod to_shoal;
pub(crate) mod types;

#[cfg(test)]
mod tests;
