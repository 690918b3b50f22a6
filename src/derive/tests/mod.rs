mod combine;
mod combine_previous;
mod condition;
mod details;
mod fixtures;
mod quantity;
mod status;
