"""The pages that read every app (Usage & Billing now, the Dashboard later): the top layer, which nothing but
the URLs and the commands imports."""
