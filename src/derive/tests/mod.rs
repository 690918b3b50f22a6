mod combine;
mod condition;
mod details;
mod fixtures;
mod quantity;
mod status;
