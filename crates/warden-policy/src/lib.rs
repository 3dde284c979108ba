#![doc = include_str!("../README.md")]

pub mod args;
pub mod decision;
mod engine;
pub mod load;
pub mod path;

pub use args::{Arguments, ArgumentsError, Limits};
pub use decision::{
    Action, Approval, Decision, DecisionRequest, Effect, Environment, EvaluationError, Principal,
    Reason, Target,
};
pub use engine::Pdp;
pub use load::{load, LoadError, Policies, PolicySources, Problem, SourceFile, SCHEMA_TEXT};
