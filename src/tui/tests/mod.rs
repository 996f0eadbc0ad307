mod fixture;
mod render;
mod update;
