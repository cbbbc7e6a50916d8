mod admin;
mod body;
mod config;
mod errors;
mod reload;
mod streaming;
