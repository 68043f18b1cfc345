//! What `--reduce` accepts: the method table for help texts, and a check of the user's
//! string that needs no model, so that a typo fails before one loads.

use glimpse_core::reduce::plan::METHODS;
use glimpse_core::reduce::ReduceSpec;
use napi::Env;
use napi_derive::napi;

use crate::errors::{guarded, to_js_error};

/// A reduction method and the settings its spec string takes.
#[napi(object, object_from_js = false)]
pub struct ReductionMethod {
    pub name: String,
    /// `k=v` settings with their defaults, `|` between alternatives.
    pub settings: String,
}

/// Every method `reduce` accepts, in the engine's order.
#[napi]
pub fn reduction_methods() -> Vec<ReductionMethod> {
    METHODS
        .iter()
        .map(|(name, settings)| ReductionMethod {
            name: (*name).to_string(),
            settings: (*settings).to_string(),
        })
        .collect()
}

/// Throws the engine's usage error (`code` `GLIMPSE_USAGE`) if `spec` is not a valid
/// reduction spec. Whether it fits a given model (its layers, its image tokens) is only
/// known once the model is loaded.
#[napi]
pub fn check_reduce_spec(env: Env, spec: String) -> napi::Result<()> {
    guarded(|| ReduceSpec::parse(&spec).map(drop)).map_err(|err| to_js_error(&env, &err))
}
