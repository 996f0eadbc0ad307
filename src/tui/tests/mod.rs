mod fixture;
mod render;
mod update;
mod views;
