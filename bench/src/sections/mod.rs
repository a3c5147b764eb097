//! One module per section of the report, run in this order.

pub(crate) mod audit;
pub(crate) mod authorize;
pub(crate) mod batch_and_mask;
pub(crate) mod gateways;
pub(crate) mod limits;
pub(crate) mod observability;
pub(crate) mod reload;
pub(crate) mod saturated;
pub(crate) mod scale;
pub(crate) mod stages;
pub(crate) mod witness;
