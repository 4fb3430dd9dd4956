"""Domain code shared by workflows, activities, the worker and the starter."""
