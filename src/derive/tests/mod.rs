mod fixtures;
mod quantity;
