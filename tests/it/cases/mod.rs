mod admin;
mod body;
mod config;
mod errors;
mod jwt;
mod policy;
mod reload;
mod streaming;
