package console

// runRoutes registers the routes of the runs list and the run page.
func (c *Console) runRoutes() {}
