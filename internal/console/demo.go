package console

// demoRoutes registers the routes of the demo flow.
func (c *Console) demoRoutes() {}
