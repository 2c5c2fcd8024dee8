//! placeholder
#[derive(Debug)]
pub struct Dataplane;
#[derive(Debug)]
pub struct DataplaneConfig;
