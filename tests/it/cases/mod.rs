mod admin;
mod body;
mod config;
mod errors;
mod policy;
mod reload;
mod streaming;
